// A package.json-less app: only Node.js built-ins.
const http = require("http");

const port = Number(process.env.PORT || 8080);
http
  .createServer((req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`hello from node ${process.version} (${process.env.NODE_ENV})\n`);
  })
  .listen(port, () => console.log(`listening on ${port}`));
