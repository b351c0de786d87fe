// The sandbox banner's text for each /readyz sandbox status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sandboxNotice } from '../../src/lib/sandbox.js';

test('sandbox notice', () => {
  const cases = [
    { name: 'full', in: { abi: 7, kernel_abi: 7, level: 'full' }, want: '' },
    { name: 'absent (older server)', in: undefined, want: '' },
    { name: 'garbage', in: 'full', want: '' },
    { name: 'unknown level', in: { level: 'weird' }, want: '' },
  ];
  for (const c of cases) assert.equal(sandboxNotice(c.in), c.want, c.name);

  const partial = sandboxNotice({ abi: 3, kernel_abi: 7, level: 'partial', missing: ['TCP connect and bind (reaching the web\'s port)', 'ioctl on devices'] });
  assert.match(partial, /partial \(Landlock ABI 3\)/);
  assert.match(partial, /TCP connect and bind/);
  assert.match(partial, /ioctl on devices/);

  const missing = sandboxNotice({ abi: 0, kernel_abi: 0, level: 'missing', missing: ['file access'] });
  assert.match(missing, /NOT sandboxed/);
});
