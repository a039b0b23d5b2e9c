import sys

print("worker ran:", " ".join(sys.argv[1:]))
