import os
from importlib.metadata import version

import bottle

app = bottle.Bottle()


@app.get("/")
def index():
    return f"hello from pep621 {version('hello-pep621')}\n"


def main():
    bottle.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")), quiet=True)
