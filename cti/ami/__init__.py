"""An AMI-compatible manager interface: CRMs built for Asterisk connect unchanged.

`protocol` frames and serialises AMI blocks, `channels` turns bus events into
Asterisk channels and events, and `server` runs the sessions and the TCP
listener on the node's loop. See docs/ami.md.
"""

from cti.ami.channels import AmiEvent, Channel, ChannelTracker
from cti.ami.protocol import BANNER, Message, Parser, RemoteProtocolError, serialize
from cti.ami.server import AmiServer, ManagerCore, Session, install_reactor, start_ami

__all__ = [
    "BANNER",
    "AmiEvent",
    "AmiServer",
    "Channel",
    "ChannelTracker",
    "ManagerCore",
    "Message",
    "Parser",
    "RemoteProtocolError",
    "Session",
    "install_reactor",
    "serialize",
    "start_ami",
]
