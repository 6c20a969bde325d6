"""``hello-labels demo``: the whole pipeline offline on bundled Fashion-MNIST images."""
from .pipeline import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
