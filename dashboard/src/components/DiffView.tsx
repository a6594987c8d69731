// A Pulumi preview diff, rendered readably: one line per row, created resources in green,
// deleted in red, updates in amber, replacements in violet.
import { diffLines } from '../model';

export function DiffView({ diff }: { diff: string }) {
  if (diff.trim() === '') return <p className="muted">No diff text was reported.</p>;
  return (
    <pre className="diff" data-testid="diff">
      {diffLines(diff).map((line, i) => (
        <span key={i} className={`diff-line diff-${line.kind}`}>
          {line.text || ' '}
          {'\n'}
        </span>
      ))}
    </pre>
  );
}
