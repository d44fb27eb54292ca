#!/usr/bin/env node
// One official pusher-js client, driven by tests/e2e/test_pusher_js.py.
//
//   node agent.js '<json options>'
//
// Options: host, port, key, authEndpoint, userAuthEndpoint, authParams, userAuthParams,
// activityTimeout, pongTimeout (ms, pusher-js defaults when absent), log (true: pusher-js debug
// log lines are reported too), lifetime (seconds, default 30).
//
// Reads one JSON command per line on stdin and prints one JSON object per line on stdout for
// everything it observes. Exits when stdin closes, on {"cmd": "exit"}, or after `lifetime`
// seconds, whichever comes first, so a stuck test never leaves a node process behind.
//
// The plain `pusher-js` entry point is used on purpose: its Node build bundles tweetnacl, so it
// supports private-encrypted- channels. `pusher-js/with-encryption` loads the *web* build and
// fails under Node ("self is not defined").
'use strict';

const readline = require('readline');
const Pusher = require('pusher-js');

const options = JSON.parse(process.argv[2] || '{}');
const lifetime = Number(options.lifetime || 30);

function emit(record) {
  process.stdout.write(JSON.stringify(record) + '\n');
}

function finish(code) {
  try {
    pusher.disconnect();
  } catch (e) {
    // already closed
  }
  // Let stdout drain before leaving.
  process.stdout.write('', () => process.exit(code));
}

setTimeout(() => {
  emit({ type: 'timeout', lifetime });
  finish(0);
}, lifetime * 1000).unref();

if (options.log) {
  Pusher.log = (message) => emit({ type: 'log', message: String(message) });
}

const timeouts = {};
for (const name of ['activityTimeout', 'pongTimeout']) {
  if (options[name]) timeouts[name] = options[name];
}

const pusher = new Pusher(options.key, {
  ...timeouts,
  cluster: 'local',
  wsHost: options.host,
  wsPort: options.port,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  channelAuthorization: {
    endpoint: options.authEndpoint,
    transport: 'ajax',
    params: options.authParams || {},
  },
  userAuthentication: {
    endpoint: options.userAuthEndpoint,
    transport: 'ajax',
    params: options.userAuthParams || {},
  },
});

pusher.connection.bind('state_change', ({ previous, current }) => {
  emit({ type: 'state', previous, current, socket_id: pusher.connection.socket_id || null });
});
pusher.connection.bind('error', (error) => {
  // Connection-level errors: pusher:error frames and close actions (error.data has code/message).
  emit({ type: 'connection_error', error: errorRecord(error) });
});

function errorRecord(error) {
  if (!error) return null;
  const record = { type: error.type || null };
  if (error.data !== undefined) record.data = error.data;
  if (error.error !== undefined) record.error = String(error.error && (error.error.message || error.error.type || error.error));
  return record;
}

function membersSnapshot(channel) {
  const members = [];
  channel.members.each((member) => members.push(member));
  members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    type: 'members',
    channel: channel.name,
    count: channel.members.count,
    me: channel.members.me,
    members,
  };
}

// Only callbacks bound to a specific event name receive the metadata (user_id on client events
// in presence channels), so `bind` lists the events to bind that way in addition to the global
// callback that records everything.
function subscribe(command) {
  const channel = pusher.subscribe(command.channel);
  channel.bind_global((event, data) => {
    const record = { type: 'event', channel: command.channel, event, data: data === undefined ? null : data };
    if (event === 'pusher:subscription_succeeded' && channel.members) {
      // data is the Members object itself for presence channels.
      record.data = null;
      record.members = membersSnapshot(channel);
    }
    if (event === 'pusher:subscription_count') {
      record.subscription_count = channel.subscriptionCount;
    }
    emit(record);
  });
  for (const event of command.bind || []) {
    channel.bind(event, (data, metadata) => {
      emit({ type: 'bound', channel: command.channel, event, data: data === undefined ? null : data, metadata: metadata || null });
    });
  }
}

const handlers = {
  subscribe,
  unsubscribe(command) {
    pusher.unsubscribe(command.channel);
    emit({ type: 'unsubscribed', channel: command.channel });
  },
  trigger(command) {
    const channel = pusher.channel(command.channel);
    let ok = false;
    let error = null;
    try {
      ok = channel ? channel.trigger(command.event, command.data) : false;
    } catch (e) {
      error = e.message;
    }
    emit({ type: 'triggered', channel: command.channel, event: command.event, ok, error });
  },
  members(command) {
    emit(membersSnapshot(pusher.channel(command.channel)));
  },
  signin() {
    pusher.user.bind_global((event, data) => {
      emit({ type: 'user_event', event, data: data === undefined ? null : data });
    });
    pusher.user.bind('pusher:signin_error', (error) => emit({ type: 'signin_error', error }));
    for (const name of ['online', 'offline']) {
      pusher.user.watchlist.bind(name, (event) => emit({ type: 'watchlist', name, event }));
    }
    pusher.signin();
    pusher.user.signinDonePromise.then(() => {
      emit({ type: 'signin_done', user_data: pusher.user.user_data });
    });
  },
  user_channel() {
    const channel = pusher.user.serverToUserChannel;
    emit({
      type: 'user_channel',
      name: channel ? channel.name : null,
      subscribed: channel ? channel.subscribed : false,
    });
  },
  state() {
    emit({ type: 'status', state: pusher.connection.state, socket_id: pusher.connection.socket_id || null });
  },
  disconnect() {
    pusher.disconnect();
  },
  exit() {
    finish(0);
  },
};

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
    const handler = handlers[command.cmd];
    if (!handler) throw new Error(`unknown command ${command.cmd}`);
    handler(command);
  } catch (e) {
    emit({ type: 'agent_error', error: e.message, line });
  }
});
input.on('close', () => finish(0));
