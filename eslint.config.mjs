// Lint setup: typescript-eslint's recommended rules over the whole tree, and the Rules of React
// (eslint-plugin-react-hooks) over the dashboard.
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'test-results/'] },
  ...tseslint.configs.recommended,
  {
    // Plain CommonJS launchers (bin scripts) load TypeScript through tsx with require().
    files: ['**/*.js', '**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  { files: ['dashboard/**/*.{ts,tsx}'], ...reactHooks.configs.flat.recommended },
);
