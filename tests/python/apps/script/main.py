import sys

print(f"hello from a script on Python {sys.version_info.major}.{sys.version_info.minor}")
