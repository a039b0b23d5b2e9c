const express = require("express");

const app = express();
app.get("/", (req, res) => {
  res.type("text/plain").send(`npm-express on node ${process.version} (${process.env.NODE_ENV})\n`);
});
app.get("/versions", (req, res) => {
  res.json({ express: require("express/package.json").version, node: process.version });
});
const port = Number(process.env.PORT || 8080);
app.listen(port, () => console.log(`listening on ${port}`));
