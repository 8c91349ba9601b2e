"""Facial representation learning (research package, above the core): self-supervised pre-training of any
``AutoModel`` backbone (:mod:`.losses`, :mod:`.augment`, :mod:`.modeling`, :mod:`.trainer`), a few-shot benchmark
over face tasks (:mod:`.tasks`, :mod:`.fewshot`) and dataset size / redundancy analysis (:mod:`.redundancy`).
Nothing in the core imports it."""
