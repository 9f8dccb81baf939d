"""Built-in demo traffic: agents' phones and customers' calls against the demo contact center.

``ccserver run --demo-traffic`` starts it beside the node, so the wallboard
and the reports show calls the first time someone opens them. Real SIP and
RTP over loopback, through the node's own sans-IO stack (docs in README.md).
"""

from ccserver.demo_traffic.plan import DemoPlan, DemoSettings
from ccserver.demo_traffic.runner import TRUNK_ADDRESS, DemoTraffic

__all__ = ["TRUNK_ADDRESS", "DemoPlan", "DemoSettings", "DemoTraffic"]
