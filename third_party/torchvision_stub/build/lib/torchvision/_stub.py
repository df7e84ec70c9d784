"""Shared machinery of the import-only torchvision stub (see ``torchvision/__init__``)."""


class _Unavailable:
    """Stands in for any torchvision attribute: importable, unusable."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"{self._name} is unavailable: atts installs an import-only torchvision stub on "
            "CPU machines (the PyPI wheel is a CUDA build); multimodal models are unsupported"
        )

    def __repr__(self):
        return f"<unavailable {self._name}>"


def module_getattr(module_name: str):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(f"{module_name}.{name}")

    return __getattr__
