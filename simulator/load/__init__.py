"""The live run: the open-loop engine and its timer, the transport under it, the recorder it
writes into, worker processes, the embedded storefront's launcher, live progress, and the
runner that takes one ``flashsale run`` from target to report."""
