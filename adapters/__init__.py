"""Drop-in shims for distillation codebases (installed as ``hello_labels.adapters``)."""
