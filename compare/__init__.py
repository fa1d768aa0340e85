"""`run.py compare`: a grid of variants of one `train-dqn` or `train-gan` command, each a normal
run folder under one parent, run as many at a time as the cores allow, then one table (mean and
95% confidence interval over seeds) and one plot of the curves.

    python run.py compare --vary optimizer=adam,sgd,rmsprop --seeds 2 --name optimizers \\
        train-dqn --env-id Playground/Catch-v0 --total-steps 20000

The settings live in `compare.config`, the work in `compare.grid`; the package sits on top of
the trainers, which it starts as `run.py` processes (so each run is exactly what the same
command line would do, and a run that fails leaves the others going).
"""
