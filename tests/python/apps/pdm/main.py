import bottle

app = bottle.Bottle()


@app.get("/")
def index():
    return "hello from pdm, bottle %s\n" % bottle.__version__
