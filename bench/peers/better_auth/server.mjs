// better-auth as the benchmark's peer: email and password sign-up, the address proven by the emailOTP
// plugin's code, on Node's own http server and SQLite (better-sqlite3), mailed with nodemailer.
//
// Configured as better-auth's documentation has it for production: a secret and base URL of its own, the
// emailOTP plugin taking over email verification (overrideDefaultEmailVerification), sign-up requiring a
// verified address, the mail sent without being awaited ("to avoid timing attacks"), a pooled SMTP
// transport, and SQLite in WAL mode. Its rate limiter is off, as the project's is in the benchmark: every
// request comes from 127.0.0.1.
//
// Environment: PORT, DATABASE_PATH, SMTP_HOST, SMTP_PORT, BETTER_AUTH_SECRET, BENCH_HASH ("cheap": bcrypt
// cost 4, as the project's BCRYPT_ROUNDS=4; "default": better-auth's own scrypt).
// Prints "listening <port>" once it answers.

import http from "node:http";

import bcrypt from "bcryptjs";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { emailOTP } from "better-auth/plugins";
import nodemailer from "nodemailer";

const port = Number(process.env.PORT);
const database = new Database(process.env.DATABASE_PATH);
// WAL with synchronous=NORMAL: what SQLite's documentation advises for a server's database.
database.pragma("journal_mode = WAL");
database.pragma("synchronous = NORMAL");

const mailer = nodemailer.createTransport({
  host: process.env.SMTP_HOST,
  port: Number(process.env.SMTP_PORT),
  secure: false,
  ignoreTLS: true,
  pool: true,
});

function codeMail(email, otp) {
  return {
    from: "Example <no-reply@example.com>",
    to: email,
    subject: `${otp} is your verification code`,
    text: `Your verification code is ${otp}. It expires in 5 minutes.\n\nIf you did not sign up, ignore this mail.\n`,
    html: `<p>Your verification code is <strong>${otp}</strong>. It expires in 5 minutes.</p>` +
      "<p>If you did not sign up, ignore this mail.</p>",
  };
}

const cheapHash = process.env.BENCH_HASH === "cheap";

const options = {
  appName: "bench",
  baseURL: `http://127.0.0.1:${port}`,
  secret: process.env.BETTER_AUTH_SECRET,
  database,
  rateLimit: { enabled: false },
  emailAndPassword: {
    enabled: true,
    requireEmailVerification: true,
    ...(cheapHash
      ? {
          password: {
            hash: (password) => bcrypt.hash(password, 4),
            verify: ({ hash, password }) => bcrypt.compare(password, hash),
          },
        }
      : {}),
  },
  emailVerification: { sendOnSignUp: true },
  plugins: [
    emailOTP({
      overrideDefaultEmailVerification: true,
      sendVerificationOnSignUp: true,
      async sendVerificationOTP({ email, otp }) {
        // Not awaited, as the plugin's documentation recommends.
        mailer.sendMail(codeMail(email, otp)).catch((error) => console.error("mail failed", error.message));
      },
    }),
  ],
};

const { runMigrations } = await getMigrations(options);
await runMigrations();
const auth = betterAuth(options);
const handler = toNodeHandler(auth);

const server = http.createServer((request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200, { "Content-Type": "application/json" }).end('{"status":"ok"}');
    return;
  }
  handler(request, response);
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));

function stop() {
  server.close();
  server.closeAllConnections();
  mailer.close();
  database.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
