import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello from pybuild! uid=%d\n" % os.getuid()


@app.get("/healthz")
def health():
    return {"ok": True}
