"""The storage benchmark, in the manner of kubestr's fio: fio as Kubernetes Jobs on a
SeaweedFS claim, on an NFS claim and on the node's local disk (the baseline, same run).
`fio.py` says what fio runs and reads its JSON; `runner.py` runs the Jobs; `results.py`
holds the result (`halab.storagebench/v1`), its table, ratios and figure."""
