// A signup against idverify from Node, built from the contract alone: the protos under
// proto/ are loaded at run time (no generated code, nothing from the idverify package).
//
//   IDVERIFY_TOKEN=<registrar token> node signup.js
//
// Environment: IDVERIFY_TARGET (127.0.0.1:50051), IDVERIFY_TOKEN (a registrar's, for the
// verification calls), IDVERIFY_PLATFORM_TOKEN (a platform client's, for GetAccount;
// IDVERIFY_TOKEN when unset, so one admin token serves both), and the person:
// IDVERIFY_ACCOUNT_ID, IDVERIFY_NAME, IDVERIFY_DOCUMENT_NUMBER, IDVERIFY_PHONE.
// The SMS code is read from standard input (the development server's console sender logs it).
// On a refusal it prints the status, the reason code from google.rpc.ErrorInfo, the field from
// google.rpc.BadRequest and the delay from google.rpc.RetryInfo, and exits with 1.
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const readline = require("node:readline");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_DIR = process.env.IDVERIFY_PROTO_DIR || path.join(__dirname, "..", "..", "proto");
const TARGET = process.env.IDVERIFY_TARGET || "127.0.0.1:50051";
const TOKEN = process.env.IDVERIFY_TOKEN || "";
// Account reads are the platform role's; an admin token may serve as both.
const PLATFORM_TOKEN = process.env.IDVERIFY_PLATFORM_TOKEN || TOKEN;

// The consent texts this application shows; each consent names the version of its text.
const CONSENT_TEXTS = {
  identity: "We verify your name and ID number to comply with real-name registration rules.",
  phone: "We send a one-time code to your phone number to confirm it is yours.",
};

function textVersion(text) {
  return "sha256:" + crypto.createHash("sha256").update(text, "utf8").digest("hex");
}

const definition = protoLoader.loadSync(
  ["idverify/v1/verification.proto", "idverify/v1/account.proto"],
  { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const v1 = grpc.loadPackageDefinition(definition).idverify.v1;

// google.rpc.Status and its details, shipped under proto/google/rpc, to read a refusal.
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => path.join(PROTO_DIR, target);
rpcRoot.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = rpcRoot.lookupType("google.rpc.Status");
const DETAIL_TYPES = {
  "type.googleapis.com/google.rpc.ErrorInfo": rpcRoot.lookupType("google.rpc.ErrorInfo"),
  "type.googleapis.com/google.rpc.BadRequest": rpcRoot.lookupType("google.rpc.BadRequest"),
  "type.googleapis.com/google.rpc.RetryInfo": rpcRoot.lookupType("google.rpc.RetryInfo"),
};

// The status, reason, field and retry delay of a refused call.
function describeError(error) {
  const parts = [`status=${grpc.status[error.code] || error.code}`];
  const [raw] = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (!raw) {
    return `${parts[0]} message=${JSON.stringify(error.details)}`;
  }
  for (const any of Status.decode(raw).details) {
    const type = DETAIL_TYPES[any.type_url];
    if (!type) continue;
    const detail = type.decode(any.value);
    if (any.type_url.endsWith("ErrorInfo")) {
      parts.push(`reason=${detail.reason}`, `domain=${detail.domain}`);
    } else if (any.type_url.endsWith("BadRequest")) {
      for (const violation of detail.field_violations) parts.push(`field=${violation.field}`);
    } else if (detail.retry_delay) {
      const seconds = Number(detail.retry_delay.seconds || 0) + (detail.retry_delay.nanos || 0) / 1e9;
      parts.push(`retry_after=${seconds}s`);
    }
  }
  parts.push(`message=${JSON.stringify(error.details)}`);
  return parts.join(" ");
}

function call(client, method, request, token = TOKEN) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 15000 }, (error, reply) => {
      if (error) {
        error.rpc = method;
        reject(error);
      } else {
        resolve(reply);
      }
    });
  });
}

function readCode() {
  const lines = readline.createInterface({ input: process.stdin });
  process.stdout.write("code: ");
  return new Promise((resolve, reject) => {
    lines.once("line", (line) => {
      resolve(line.trim()); // first: closing emits "close", whose rejection then comes too late
      lines.close();
    });
    lines.once("close", () => reject(new Error("no code on standard input")));
  });
}

async function signup() {
  const credentials = grpc.credentials.createInsecure();
  const verification = new v1.VerificationService(TARGET, credentials);
  const accounts = new v1.AccountService(TARGET, credentials);
  const accountId = process.env.IDVERIFY_ACCOUNT_ID || `node-${crypto.randomUUID()}`;

  const { methods } = await call(verification, "ListMethods", { subject_kind: "SUBJECT_KIND_PERSON" });
  console.log(`methods: ${methods.map((m) => `${m.id}${m.biometric ? " (biometric)" : ""}`).join(", ")}`);

  const consents = Object.keys(CONSENT_TEXTS);
  const started = (
    await call(verification, "StartVerification", {
      request_id: crypto.randomUUID(),
      account_id: accountId,
      method_id: "sms",
      subject: {
        kind: "SUBJECT_KIND_PERSON",
        name: process.env.IDVERIFY_NAME || "张三",
        document_type: "DOCUMENT_TYPE_CN_RIC",
        document_number: process.env.IDVERIFY_DOCUMENT_NUMBER || "11010519491231002X",
        phone_number: process.env.IDVERIFY_PHONE || "13800000000",
      },
      consents,
      consent_text_versions: Object.fromEntries(consents.map((p) => [p, textVersion(CONSENT_TEXTS[p])])),
      client_ip: "203.0.113.9",
    })
  ).verification;
  console.log(`verification ${started.verification_id} ${started.status} to ${started.masked_phone}`);
  if (started.status !== "VERIFICATION_STATUS_CHALLENGE_SENT") {
    console.log(`reason_code=${started.reason_code}`);
    return 1;
  }

  const code = await readCode();
  const submitted = (
    await call(verification, "SubmitChallenge", { verification_id: started.verification_id, code })
  ).verification;
  console.log(`submitted: ${submitted.status} reason_code=${submitted.reason_code || "-"}`);

  const fetched = (
    await call(verification, "GetVerification", { verification_id: started.verification_id })
  ).verification;
  console.log(`verification: ${fetched.status} method=${fetched.method_id}`);

  const { account } = await call(accounts, "GetAccount", { account_id: accountId }, PLATFORM_TOKEN);
  console.log(
    `account ${account.account_id}: verified=${account.verified} binding=${account.binding_state} ` +
      `assurance=${account.assurance} age_band=${account.age_band}`,
  );
  return fetched.status === "VERIFICATION_STATUS_VERIFIED" ? 0 : 1;
}

signup().then(
  (code) => process.exit(code),
  (error) => {
    if (error.code === undefined) throw error;
    console.log(`refused: ${error.rpc} ${describeError(error)}`);
    process.exit(1);
  },
);
