// A command in a real terminal: a tmux session of its own (its own server socket), 160x50, the command run by
// bash with its exit status printed after it ("[exit N]"), the pane's screen read with capture-pane.
// Used by the chat and top tests.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Terminal {
  constructor(dir, command) {
    this.socket = `clawbot-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.log = path.join(dir, `pane-${this.socket}.log`);
    // bash, not sh: after a Ctrl-C that its child handled, dash exits when the child does; bash goes on.
    this.script = path.join(dir, `run-${this.socket}.sh`);
    fs.writeFileSync(this.script, `#!/bin/bash\n${command}\necho "[exit $?]"\nsleep 30\n`, { mode: 0o755 });
    this.tmux('new-session', '-d', '-s', 't', '-x', '160', '-y', '50', this.script);
    this.tmux('pipe-pane', '-o', '-t', 't', `cat >> '${this.log}'`);
  }
  tmux(...args) {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
  }
  screen() {
    return this.tmux('capture-pane', '-p', '-J', '-t', 't', '-S', '-200');
  }
  raw() {
    return fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8') : '';
  }
  type(text) {
    this.tmux('send-keys', '-t', 't', '-l', text);
    this.tmux('send-keys', '-t', 't', 'Enter');
  }
  key(name) {
    this.tmux('send-keys', '-t', 't', name);
  }
  async waitFor(pattern, { timeoutMs = 60000, count = 1 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      const matches = s.match(new RegExp(pattern.source, 'g')) || [];
      if (matches.length >= count) return s;
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern} (x${count}):\n${s}`);
      await sleep(100);
    }
  }
  close() {
    try { this.tmux('kill-server'); } catch { /* already gone */ }
  }
}
