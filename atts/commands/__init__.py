"""The commands (calibrate, evaluate, compare, bench, soak) as functions; argparse lives in atts.cli."""
