import express from "express";

const app = express();
app.get("/", (req, res) => res.type("text/plain").send(`yarn-berry (pnp: ${Boolean(process.versions.pnp)}) on node ${process.version}\n`));
app.listen(Number(process.env.PORT || 8080), () => console.log("listening"));
