'use strict';
// pybuild's Node.js launcher, copied into the image: expands $VAR, ${VAR} and ${VAR:-default}
// in the command (the image has no shell), then runs it. `node FILE ARGS` runs in this very
// process; anything else (node flags, other programs) runs as a child with signals passed on.
const { spawn } = require('child_process');
const Module = require('module');
const os = require('os');
const path = require('path');

const VAR = /\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g;
const expand = (arg) => arg.replace(VAR, (_, braced, fallback, bare) => {
  const value = process.env[braced || bare];
  return value !== undefined && value !== '' ? value : (fallback || '');
});

const argv = process.argv.slice(2).map(expand);
if (argv.length === 0) {
  console.error('launch: no command');
  process.exit(2);
}
if (argv[0] === 'node' && argv.length > 1 && !argv[1].startsWith('-')) {
  process.argv = [process.execPath, path.resolve(argv[1]), ...argv.slice(2)];
  Module.runMain();
} else {
  const command = argv[0] === 'node' ? process.execPath : argv[0];
  const child = spawn(command, argv.slice(1), { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => {
    console.error(`launch: ${command}: ${err.message}`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => process.exit(signal ? 128 + (os.constants.signals[signal] || 0) : code));
}
