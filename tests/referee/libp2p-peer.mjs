// An independent federation peer for the Rust tests: js-libp2p (TCP, noise, yamux, identify,
// ping) with @libp2p/gossipsub, configured as `spec/federation.md` §3 requires of a peer
// (strict signing, message id = SHA-256 of the payload). It is driven by JSON lines on stdin and
// reports JSON lines on stdout:
//
//   argv: --seed <64 hex chars>   the ed25519 seed of its libp2p identity (the organisation key)
//   out:  {"event":"ready","peer_id":…,"addrs":[…]}
//   in:   {"cmd":"dial","addr":"/ip4/…/tcp/…/p2p/…"}     out: {"event":"dialed"} | {"event":"error",…}
//   in:   {"cmd":"subscribe","topic":…}                 out: {"event":"subscribed","topic":…}
//   in:   {"cmd":"publish","topic":…,"data_hex":…}      out: {"event":"published","recipients":n} | error
//   in:   {"cmd":"topic_peers","topic":…}               out: {"event":"topic_peers","peers":[…]}
//   in:   {"cmd":"stop"}                                 out: {"event":"stopped"}, then exits
//   out:  {"event":"message","topic":…,"from":…,"data_hex":…,"msg_id_hex":…} for every message
//         gossipsub delivers.
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';

// js-libp2p 3 calls Promise.withResolvers (Node.js 22); the machine's Node.js is 20.
Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new Promise((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
};

function out(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function arg(name) {
  const at = process.argv.indexOf(name);
  if (at < 0 || at + 1 >= process.argv.length) {
    throw new Error(`missing ${name}`);
  }
  return process.argv[at + 1];
}

const sha256 = (bytes) => new Uint8Array(createHash('sha256').update(bytes).digest());

const seed = Buffer.from(arg('--seed'), 'hex');
if (seed.length !== 32) {
  throw new Error('--seed must be 32 bytes of hex');
}
const privateKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(seed));

const node = await createLibp2p({
  privateKey,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // Loopback addresses are what the tests use.
  connectionGater: { denyDialMultiaddr: () => false },
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      msgIdFn: (message) => sha256(message.data),
      // Chat topics may have a single peer: publish to it even without a mesh.
      allowPublishToZeroTopicPeers: false,
      floodPublish: true,
      emitSelf: false,
      // Up to a 1 MiB change plus its header, as the Rust side allows.
      maxInboundDataLength: 1024 * 1024 + 16 * 1024,
    }),
  },
});

const pubsub = node.services.pubsub;
pubsub.addEventListener('message', (event) => {
  const message = event.detail;
  out({
    event: 'message',
    topic: message.topic,
    from: message.type === 'signed' ? message.from.toString() : null,
    data_hex: Buffer.from(message.data).toString('hex'),
    msg_id_hex: Buffer.from(sha256(message.data)).toString('hex'),
  });
});

out({
  event: 'ready',
  peer_id: node.peerId.toString(),
  addrs: node.getMultiaddrs().map((a) => a.toString()),
});

async function handle(command) {
  switch (command.cmd) {
    case 'dial':
      await node.dial(multiaddr(command.addr));
      return { event: 'dialed' };
    case 'subscribe':
      pubsub.subscribe(command.topic);
      return { event: 'subscribed', topic: command.topic };
    case 'publish': {
      const result = await pubsub.publish(command.topic, Buffer.from(command.data_hex, 'hex'));
      return { event: 'published', recipients: result.recipients.length };
    }
    case 'topic_peers':
      return {
        event: 'topic_peers',
        peers: pubsub.getSubscribers(command.topic).map((p) => p.toString()),
      };
    case 'stop':
      await node.stop();
      out({ event: 'stopped' });
      process.exit(0);
      return null;
    default:
      return { event: 'error', error: `unknown command ${command.cmd}` };
  }
}

// Commands run one at a time, in order.
let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(async () => {
    try {
      const reply = await handle(JSON.parse(line));
      if (reply) out(reply);
    } catch (error) {
      out({ event: 'error', error: String(error?.message ?? error) });
    }
  });
});
process.stdin.on('end', () => queue.then(() => node.stop()).then(() => process.exit(0)));
