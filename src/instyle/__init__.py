"""instyle: fast feed-forward neural style transfer with instance normalization."""
__version__ = "0.1.0"
