"""click's exception classes, wherever this typer keeps them (typer >= 0.22 vendors click)."""

try:
    from typer._click.exceptions import BadParameter, ClickException, NoSuchOption
except ImportError:  # older typer: the click package
    from click.exceptions import BadParameter, ClickException, NoSuchOption

__all__ = ["BadParameter", "ClickException", "NoSuchOption"]
