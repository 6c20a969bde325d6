"""The label-source benchmark under its first name: ``python -m benchmarks.fashion_mnist_bench`` runs
:mod:`benchmarks.label_sources` (whose default dataset is Fashion-MNIST), as the commands recorded in
BENCHMARKS.md name it."""
from .label_sources import main

if __name__ == "__main__":
    main()
