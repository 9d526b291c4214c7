// Referee: automerge-js (@automerge/automerge) loads a document saved by a Confab node and
// prints what it reads, as JSON: the schema marker and every message, update and reaction
// entry of a history bucket (the values are the JSON strings the node wrote).
//
//   node automerge-read.mjs <saved document>
import { readFileSync } from 'node:fs';
import * as Automerge from '@automerge/automerge';

const bytes = new Uint8Array(readFileSync(process.argv[2]));
const doc = Automerge.load(bytes);
const entries = (map) => Object.entries(map ?? {}).map(([key, value]) => ({ key, value: String(value) }));
console.log(JSON.stringify({
  schema: doc.v,
  messages: entries(doc.msg),
  updates: entries(doc.upd),
  reactions: entries(doc.rx),
  heads: Automerge.getHeads(doc),
}));
