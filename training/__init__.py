"""Training and evaluation machinery shared by train.py, evaluate.py and the scripts."""
