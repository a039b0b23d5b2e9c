const express = require("express");

const app = express();

app.get("/", (req, res) => {
  res.type("text/plain").send(`Hello from pybuild: Express on Node.js ${process.version}\n`);
});

app.get("/healthz", (req, res) => res.json({ ok: true }));

// pybuild sets PORT (default 8080); the image has no shell, so read it here.
const port = Number(process.env.PORT || 8080);
app.listen(port, () => console.log(`listening on :${port}`));
