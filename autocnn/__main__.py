"""`python -m autocnn` runs the command line."""

from autocnn.cli import main

if __name__ == "__main__":
    main()
