import { createServer, IncomingMessage, ServerResponse } from "node:http";

const port: number = Number(process.env.PORT ?? 8080);

function greet(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader("content-type", "text/plain");
  res.end(`typescript on node ${process.version} (${process.env.NODE_ENV})\n`);
}

createServer(greet).listen(port, () => console.log(`listening on ${port}`));
