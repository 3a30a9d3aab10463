"""The twin: a stand-in of the inventory's cluster made of real processes on loopback.

Built so far: the address map and real etcd members (etcd.py) with a client for etcd's
HTTP gateway. Not built yet: the API servers, controllers, kubelets, the VIP and the
`halab twin` command (issue 4).
"""
