"""Integration tests: the platform driven over loopback by real SIP and RTP peers.

`peers` holds the harness (SIPp, baresip, a dumpcap observer, port allocation);
`scenarios` holds the SIPp XML scenarios those peers run.
"""
