"""pyxsw: a userspace Ethernet switch on AF_XDP with a Cython core.

    from pyxsw import Config, Switch
    with Switch(Config.load("conf/sw0.toml")) as sw:
        print(sw.fdb_list())
"""
__all__ = ["Config", "ConfigError", "Switch"]
__version__ = "0.1.0"


def __getattr__(name):
    # Imported on first use: the CLI's config checks must not need the compiled core.
    if name in ("Config", "ConfigError"):
        from . import config
        return getattr(config, name)
    if name == "Switch":
        from .switch import Switch
        return Switch
    raise AttributeError(name)
