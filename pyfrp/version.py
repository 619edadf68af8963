"""pyfrp's version, and the frp release it speaks for."""

__version__ = "0.1.0"

# The frp release whose v1 wire protocol pyfrp speaks. It is what pyfrpc reports in Login.version
# (frps <= 0.51 rejects anything below 0.18.0) and what pyfrps reports in LoginResp.version.
FRP_VERSION = "0.70.1"
