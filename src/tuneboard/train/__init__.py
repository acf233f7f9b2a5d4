"""Training: workflow.py runs one training job top to bottom; stages/ hold what differs per training stage."""
