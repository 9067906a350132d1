"""`python -m autocnn` runs the command line."""

from autocnn.cli.main import console

if __name__ == "__main__":
    console()
