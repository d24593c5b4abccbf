-- The demo application's tables, and the new tables they will move to.
-- channels_v2 renames title to name; the others keep their columns.
CREATE TABLE channels (
  id         bigserial PRIMARY KEY,
  title      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE posts (
  id         bigserial PRIMARY KEY,
  channel_id bigint NOT NULL REFERENCES channels (id),
  body       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE comments (
  id         bigserial PRIMARY KEY,
  post_id    bigint NOT NULL REFERENCES posts (id),
  author     text NOT NULL,
  body       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels_v2 (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE posts_v2 (
  id         bigint PRIMARY KEY,
  channel_id bigint NOT NULL,
  body       text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE comments_v2 (
  id         bigint PRIMARY KEY,
  post_id    bigint NOT NULL,
  author     text NOT NULL,
  body       text NOT NULL,
  created_at timestamptz NOT NULL
);

INSERT INTO channels (title)
SELECT 'channel ' || g FROM generate_series(1, 20) g;
INSERT INTO posts (channel_id, body)
SELECT 1 + g % 20, 'post ' || g FROM generate_series(1, 500) g;
INSERT INTO comments (post_id, author, body)
SELECT 1 + g % 500, 'user' || g % 37, 'comment ' || g FROM generate_series(1, 5000) g;
