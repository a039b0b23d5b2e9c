const express = require("express");

const app = express();
app.get("/", (req, res) => res.type("text/plain").send(`pnpm-express on node ${process.version}\n`));
app.listen(Number(process.env.PORT || 8080), () => console.log("listening"));
