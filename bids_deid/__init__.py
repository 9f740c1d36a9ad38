"""bids-deid: de-identify neuroimaging data into a shareable BIDS dataset."""

__version__ = "0.1.0"
