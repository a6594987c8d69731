// waitFor keeps waiting while a lookup finds nothing yet (undefined, null or false) and returns
// the first real value, or fails at its deadline saying what it waited for.
import test from 'ava';
import { DeadlineError, waitFor } from '../common/wait';

test('waitFor treats null like undefined: a lookup that found nothing yet', async (t) => {
  const answers = [null, undefined, false, 'found'];
  let calls = 0;
  const value = await waitFor(() => answers[calls++] ?? null, {
    timeoutMs: 5000,
    intervalMs: 1,
    what: 'the row',
  });
  t.is(value, 'found');
  t.is(calls, 4);
});

test('waitFor fails at its deadline when the condition only ever returns null', async (t) => {
  const err = await t.throwsAsync(() => waitFor(() => null, { timeoutMs: 50, what: 'the row' }), {
    instanceOf: DeadlineError,
  });
  t.regex(err!.message, /timed out after 50 ms waiting for the row/);
});

test('waitFor returns falsy values other than undefined, null and false', async (t) => {
  t.is(await waitFor(() => 0, { timeoutMs: 50, what: 'a count' }), 0);
  t.is(await waitFor(() => '', { timeoutMs: 50, what: 'a text' }), '');
});
