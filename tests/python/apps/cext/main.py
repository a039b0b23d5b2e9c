import fastsum

print(f"fastsum.add(2, 40) = {fastsum.add(2, 40)} from {fastsum.__file__}")
