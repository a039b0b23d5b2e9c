const http = require("http");
const greeting = require("greeting");

const port = Number(process.env.PORT || 8080);
http
  .createServer((req, res) => res.end(`${greeting("from yarn-classic")} on node ${process.version}\n`))
  .listen(port, () => console.log(`listening on ${port}`));
