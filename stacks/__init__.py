"""Stack definitions (TOML) and their lockfiles, shipped as package data."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
