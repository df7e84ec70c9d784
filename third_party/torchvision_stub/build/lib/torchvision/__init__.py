"""Import-only stub for torchvision, for CPU machines.

The torchvision wheels on PyPI are CUDA builds that fail to import against CPU torch
(``operator torchvision::nms does not exist``). SGLang imports torchvision at module
level only for multimodal configs, timm declares it as a dependency, and transformers
imports ``torchvision.transforms.v2.functional`` for its image processors. Text models
never call any of it. So every ``torchvision.*`` module imports, every name in it
resolves, and any call fails loudly.
"""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+atts.stub"


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

    def __mro_entries__(self, bases):
        return (object,)

    def __repr__(self):
        return f"<unavailable {self._name}>"


def _module_getattr(module_name: str):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(f"{module_name}.{name}")

    return __getattr__


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__getattr__ = _module_getattr(spec.name)
        return mod

    def exec_module(self, module):
        pass


if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
    sys.meta_path.append(_StubFinder())
__getattr__ = _module_getattr(__name__)
