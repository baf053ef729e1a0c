"""pyxsw: a userspace Ethernet switch on AF_XDP with a Cython core."""
from .config import Config, ConfigError

__all__ = ["Config", "ConfigError", "Switch"]
__version__ = "0.1.0"


def __getattr__(name):
    # The switch needs the compiled core; importing the config alone must not.
    if name == "Switch":
        from .switch import Switch
        return Switch
    raise AttributeError(name)
