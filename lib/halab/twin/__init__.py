"""The twin: a stand-in of the inventory's cluster made of real processes on loopback.

Every physical host is one process (host.py) holding its etcd member, the API server,
VIP candidate and controller-manager candidate of its control-plane node, and the
kubelets of its nodes; supervisor.py starts, fails and recovers them. Clients reach it
only through the kubeconfig and target file it writes, as they would a real cluster.
"""
