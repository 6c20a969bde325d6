"""DDP on the CPU for the shim tests: forked processes standing in for a node's GPUs, and the check that each one
labelled only the rows it trains on.

G-VBSM's and EDC's ImageNet scripts (``train_FKD_parallel.py``) load the whole batch on every process and train
process ``gpu`` on slices of it: with ``small_bs = batch_size // (accumulation * world)``, accumulation step ``a``
takes rows ``[(a * world + gpu) * small_bs, (a * world + gpu + 1) * small_bs)``, and a short last batch is split
evenly (its own branch)."""
import torch


def in_processes(fn, world, out):
    """``[fn(rank) for rank in range(world)]``, each call in a forked process (one thread; it inherits the test's
    patches), its result sent back through ``out/rank<r>.pt``. A failing process stops the others and raises."""
    import torch.multiprocessing as mp

    def run(rank):
        torch.set_num_threads(1)
        torch.save(fn(rank), out / f"rank{rank}.pt")

    mp.start_processes(run, nprocs=world, start_method="fork")
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(world)]


def with_reference(run, projector, labelled):
    """``run`` (``mixed``, ``taken``, ``fed`` as :func:`check_labels_only_its_rows` reads them) with ``labelled`` (the
    projector's batch sizes so far, copied now) and ``reference``: projector(each slice taken of its mixed batch)."""
    run["labelled"] = list(labelled)
    with torch.no_grad():
        run["reference"] = [projector(run["mixed"][k][start:stop]) for k, (start, stop), _, _ in run["taken"]]
    return run


def check_labels_only_its_rows(run, rows):
    """``run``: one process's ``{"mixed": the loop's mixed batches, "taken": [(batch number, (start, stop), labels,
    the projector's batch sizes while labelling them)], "reference": projector(those rows), computed after the run,
    "labelled": the batch size of every projector call during the run, "fed": the student's inputs}``; ``rows``: per
    batch, the ``(start, stop)`` slices this process trains on. Each slice was labelled by one projector call on its
    rows alone, bit-equal to ``projector(its rows of the mixed batch)``, the student was fed those rows, and the
    projector labelled nothing else (no whole batch)."""
    assert len(run["mixed"]) == len(rows)
    sizes = [stop - start for batch in rows for start, stop in batch]
    assert run["labelled"] == sizes, f"projector batch sizes {run['labelled']}, expected {sizes}"
    taken = [(k, r) for k, r, _, _ in run["taken"]]
    assert taken == [(k, r) for k, batch in enumerate(rows) for r in batch], f"slices taken {taken}"
    for (k, (start, stop), labels, calls), reference in zip(run["taken"], run["reference"], strict=True):
        assert calls == [stop - start], (k, start, stop, calls)
        assert labels.shape[0] == stop - start and torch.equal(labels, reference), (k, start, stop)
    fed = [run["mixed"][k][start:stop] for k, batch in enumerate(rows) for start, stop in batch]
    assert len(run["fed"]) == len(fed) and all(torch.equal(a, b) for a, b in zip(run["fed"], fed))
