"""Import-only stub of `torchvision.models`: names resolve, calls fail (see torchvision/_stub.py)."""
from torchvision._stub import module_getattr

__getattr__ = module_getattr("torchvision.models")
