"""Hardware: report.py (`tuneboard env`), estimate.py (training memory), advice.py (what fits)."""
