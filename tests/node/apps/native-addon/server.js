const http = require("http");
const addon = require("hello-addon");

http
  .createServer((req, res) => res.end(`${addon.hello()} (modules ABI ${process.versions.modules})\n`))
  .listen(Number(process.env.PORT || 8080), () => console.log("listening"));
