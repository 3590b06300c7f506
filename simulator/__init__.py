"""flashsale: flash-sale order simulator and open-loop load engine."""

__version__ = "0.1.0"
