# frozen_string_literal: true

require "minitest/autorun"
require "json"
require "tmpdir"
require_relative "../lib/asc_webhook"

# Builds events in the shapes App Store Connect and the relay send.
module EventShapes
  module_function

  def webhook_body(type: "buildUploadStateUpdated", new_state: "COMPLETE",
                   resource_type: "buildUploads", link: true)
    instance = { "data" => { "type" => resource_type, "id" => "upload-1" } }
    if link
      instance["links"] = {
        "self" => "https://api.appstoreconnect.apple.com/v1/#{resource_type}/upload-1"
      }
    end
    {
      "data" => {
        "type" => type,
        "id" => "event-1",
        "version" => 1,
        "attributes" => { "oldState" => "PROCESSING", "newState" => new_state },
        "relationships" => { "instance" => instance }
      }
    }
  end

  def client_payload(new_state: "COMPLETE", url: nil)
    {
      "event" => "buildUploadStateUpdated",
      "id" => "event-1",
      "old_state" => "PROCESSING",
      "new_state" => new_state,
      "resource" => {
        "type" => "buildUploads",
        "id" => "upload-1",
        "url" => url || "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1"
      },
      "timestamp" => "2025-12-25T08:28:35Z",
      "route" => "asc-webhook",
      "relay" => { "received_at" => "2025-12-25T08:28:36Z", "request_uuid" => "r-1", "history" => [] },
      "payload" => webhook_body
    }
  end

  def build_upload_record(state: "COMPLETE", platform: "IOS", version: "1.101.0", build: "1")
    {
      "data" => {
        "type" => "buildUploads",
        "id" => "upload-1",
        "attributes" => {
          "cfBundleShortVersionString" => version,
          "cfBundleVersion" => build,
          "state" => { "errors" => [], "warnings" => [], "infos" => [], "state" => state },
          "platform" => platform
        }
      }
    }
  end
end

class LoadEventTest < Minitest::Test
  include EventShapes

  def assert_build_upload_event(event)
    assert_equal "buildUploadStateUpdated", event.type
    assert_equal "COMPLETE", event.new_state
    assert_equal "PROCESSING", event.old_state
    assert_equal "upload-1", event.resource_id
    assert_equal "buildUploads", event.resource_type
    assert_equal "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1", event.resource_url
  end

  def test_payload_option_webhook_body
    assert_build_upload_event(AscWebhook.load_event(payload: JSON.generate(webhook_body)))
  end

  def test_payload_option_client_payload
    assert_build_upload_event(AscWebhook.load_event(payload: JSON.generate(client_payload)))
  end

  def test_repository_dispatch_event_file
    with_file(JSON.generate({ "action" => "asc-webhook", "client_payload" => client_payload })) do |path|
      assert_build_upload_event(AscWebhook.load_event(event_path: path))
    end
  end

  def test_workflow_dispatch_replay_of_body
    document = { "inputs" => { "payload" => JSON.generate(webhook_body) } }
    with_file(JSON.generate(document)) do |path|
      assert_build_upload_event(AscWebhook.load_event(event_path: path))
    end
  end

  def test_workflow_dispatch_replay_of_client_payload
    document = { "inputs" => { "payload" => JSON.generate(client_payload) } }
    assert_build_upload_event(AscWebhook.event_from_document(document, "event"))
  end

  def test_payload_file_wins_over_event_path
    with_file(JSON.generate(webhook_body)) do |payload_file|
      event = AscWebhook.load_event(payload_file: payload_file, event_path: "/nonexistent")
      assert_build_upload_event(event)
    end
  end

  def test_payload_wins_over_payload_file
    event = AscWebhook.load_event(payload: JSON.generate(client_payload), payload_file: "/nonexistent")
    assert_build_upload_event(event)
  end

  def test_version_event_uses_value_attributes
    body = webhook_body(type: "appStoreVersionAppVersionStateUpdated", resource_type: "appStoreVersions")
    body["data"]["attributes"] = { "oldValue" => "IN_REVIEW", "newValue" => "REJECTED" }
    event = AscWebhook.event_from_document(body, "body")
    assert_equal "IN_REVIEW", event.old_state
    assert_equal "REJECTED", event.new_state
  end

  def test_background_asset_instance_without_data
    body = webhook_body
    body["data"]["relationships"]["instance"] = { "type" => "backgroundAssetVersions", "id" => "ba-1" }
    event = AscWebhook.event_from_document(body, "body")
    assert_equal "backgroundAssetVersions", event.resource_type
    assert_equal "ba-1", event.resource_id
    assert_nil event.resource_url
  end

  def test_no_event_given
    error = assert_raises(AscWebhook::Error) { AscWebhook.load_event }
    assert_match(/pass payload:<JSON> or payload_file:<path>/, error.message)
  end

  def test_blank_payload_counts_as_missing
    error = assert_raises(AscWebhook::Error) { AscWebhook.load_event(payload: "  ", event_path: "") }
    assert_match(/no webhook event given/, error.message)
  end

  def test_invalid_json_payload
    error = assert_raises(AscWebhook::Error) { AscWebhook.load_event(payload: "{nope") }
    assert_match(/payload is not valid JSON/, error.message)
  end

  def test_missing_payload_file
    error = assert_raises(AscWebhook::Error) { AscWebhook.load_event(payload_file: "/nonexistent.json") }
    assert_equal "payload_file /nonexistent.json not found", error.message
  end

  def test_invalid_replay_payload
    document = { "inputs" => { "payload" => "not json" } }
    error = assert_raises(AscWebhook::Error) { AscWebhook.event_from_document(document, "event") }
    assert_match(/event inputs.payload is not valid JSON/, error.message)
  end

  def test_unknown_document_names_keys
    error = assert_raises(AscWebhook::Error) { AscWebhook.event_from_document({ "zen" => 1 }, "event") }
    assert_match(/found keys \["zen"\]/, error.message)
  end

  def test_array_document_rejected
    error = assert_raises(AscWebhook::Error) { AscWebhook.event_from_document([], "event") }
    assert_match(/expected a JSON object, got Array/, error.message)
  end

  def test_client_payload_without_event
    error = assert_raises(AscWebhook::Error) do
      AscWebhook.event_from_document({ "client_payload" => { "id" => "x" } }, "event")
    end
    assert_match(/client_payload has no 'event' string/, error.message)
  end

  private

  def with_file(text)
    Dir.mktmpdir do |dir|
      path = File.join(dir, "event.json")
      File.write(path, text)
      yield path
    end
  end
end

class ActionForTest < Minitest::Test
  include EventShapes

  CASES = [
    [EventShapes.webhook_body, AscWebhook::SUBMIT_FOR_REVIEW],
    [EventShapes.webhook_body(new_state: "PROCESSING"), AscWebhook::NONE],
    [EventShapes.webhook_body(new_state: "FAILED"), AscWebhook::NONE],
    [EventShapes.webhook_body(type: "appStoreVersionAppVersionStateUpdated"), AscWebhook::NONE],
    [{ "data" => { "type" => "webhookPingCreated", "id" => "p" } }, AscWebhook::NONE]
  ].freeze

  def test_action_table
    CASES.each do |body, expected|
      event = AscWebhook.event_from_document(body, "body")
      action, reason = AscWebhook.action_for(event)
      assert_equal expected, action, "#{event.type} #{event.new_state}: #{reason}"
      refute_empty reason
    end
  end
end

class ResourceUrlTest < Minitest::Test
  include EventShapes

  def event(**overrides)
    AscWebhook::Event.new(type: "buildUploadStateUpdated", resource_type: "buildUploads",
                          resource_id: "upload-1", **overrides)
  end

  def test_default_base_keeps_apple_url
    url = AscWebhook.resource_url(event(resource_url: "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1"))
    assert_equal "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1", url
  end

  def test_rebased_onto_local_server
    url = AscWebhook.resource_url(
      event(resource_url: "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1"),
      "http://127.0.0.1:8080/"
    )
    assert_equal "http://127.0.0.1:8080/v1/buildUploads/upload-1", url
  end

  def test_foreign_host_in_event_ignored
    # Only the path is taken from the event, so the token never goes to its host.
    url = AscWebhook.resource_url(event(resource_url: "https://attacker.example/v1/buildUploads/upload-1"))
    assert_equal "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1", url
  end

  def test_built_from_type_and_id_without_url
    assert_equal "http://127.0.0.1:9/v1/buildUploads/upload-1",
                 AscWebhook.resource_url(event, "http://127.0.0.1:9")
  end

  def test_base_with_path_prefix
    assert_equal "http://127.0.0.1:9/asc/v1/buildUploads/upload-1",
                 AscWebhook.resource_url(event, "http://127.0.0.1:9/asc/")
  end

  INVALID_PATHS = [
    "https://api.appstoreconnect.apple.com/v1/buildUploads/../../v1/users",
    "https://api.appstoreconnect.apple.com/v1/buildUploads/..",
    "https://api.appstoreconnect.apple.com/v1/buildUploads/.",
    "https://api.appstoreconnect.apple.com/v1/buildUploads/%2E%2E",
    "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1%0A",
    "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1/relationships/x",
    "https://api.appstoreconnect.apple.com/v2/buildUploads/upload-1",
    "https://api.appstoreconnect.apple.com/"
  ].freeze

  def test_invalid_paths_rejected
    INVALID_PATHS.each do |url|
      error = assert_raises(AscWebhook::Error, url) { AscWebhook.resource_url(event(resource_url: url)) }
      assert_match(/expected \/v1\/<type>\/<id>/, error.message, url)
    end
  end

  def test_event_without_resource
    error = assert_raises(AscWebhook::Error) do
      AscWebhook.resource_url(AscWebhook::Event.new(type: "webhookPingCreated"))
    end
    assert_equal "the webhookPingCreated event names no resource (relationships.instance)", error.message
  end

  INVALID_BASES = ["ftp://host", "api.appstoreconnect.apple.com", "", "http://"].freeze

  def test_invalid_api_base_rejected
    INVALID_BASES.each do |base|
      error = assert_raises(AscWebhook::Error, base) { AscWebhook.resource_url(event, base) }
      assert_match(/API base .* (is invalid|is not a URL)/, error.message, base)
    end
  end
end

class BuildUploadTest < Minitest::Test
  include EventShapes

  def test_reads_version_and_build
    upload = AscWebhook.build_upload(build_upload_record)
    assert_equal "upload-1", upload.id
    assert_equal "1.101.0", upload.version
    assert_equal "1", upload.build_number
    assert_equal "ios", upload.platform
    assert_equal "COMPLETE", upload.state
  end

  def test_reads_repository_fixture
    path = File.expand_path("../../tests/fixtures/api/build-upload-complete.json", __dir__)
    upload = AscWebhook.build_upload(JSON.parse(File.read(path)))
    assert_equal "1.101.0", upload.version
    assert_equal "1", upload.build_number
    assert_equal "COMPLETE", upload.state
  end

  def test_platform_table
    { "IOS" => "ios", "MAC_OS" => "osx", "TV_OS" => "appletvos", "VISION_OS" => "xros" }.each do |asc, deliver|
      assert_equal deliver, AscWebhook.build_upload(build_upload_record(platform: asc)).platform, asc
    end
  end

  def test_unknown_platform
    error = assert_raises(AscWebhook::Error) { AscWebhook.build_upload(build_upload_record(platform: "WATCH_OS")) }
    assert_match(/platform "WATCH_OS" is not one of IOS, MAC_OS, TV_OS, VISION_OS/, error.message)
  end

  def test_wrong_resource_type
    record = build_upload_record
    record["data"]["type"] = "builds"
    error = assert_raises(AscWebhook::Error) { AscWebhook.build_upload(record) }
    assert_equal 'expected a buildUploads resource, got "builds"', error.message
  end

  def test_missing_build_number
    error = assert_raises(AscWebhook::Error) { AscWebhook.build_upload(build_upload_record(build: nil)) }
    assert_match(/has no cfBundleShortVersionString or cfBundleVersion/, error.message)
  end

  def test_incomplete_upload_stops
    upload = AscWebhook.build_upload(build_upload_record(state: "FAILED"))
    error = assert_raises(AscWebhook::Error) { AscWebhook.check_complete(upload) }
    assert_match(/is "FAILED", not COMPLETE/, error.message)
  end

  def test_complete_upload_passes
    assert_nil AscWebhook.check_complete(AscWebhook.build_upload(build_upload_record))
  end
end

class DeliverOptionsTest < Minitest::Test
  include EventShapes

  def test_submits_without_upload_or_wait
    upload = AscWebhook.build_upload(build_upload_record)
    options = AscWebhook.deliver_options(upload, app_identifier: "com.example.app",
                                                 uses_non_exempt_encryption: false)
    expected = {
      app_identifier: "com.example.app",
      app_version: "1.101.0",
      build_number: "1",
      platform: "ios",
      submit_for_review: true,
      skip_binary_upload: true,
      skip_metadata: true,
      skip_screenshots: true,
      skip_app_version_update: false,
      run_precheck_before_submit: false,
      force: true,
      submission_information: { export_compliance_uses_encryption: false }
    }
    assert_equal expected, options
  end

  def test_encryption_left_to_info_plist
    upload = AscWebhook.build_upload(build_upload_record)
    options = AscWebhook.deliver_options(upload, app_identifier: "com.example.app")
    refute options.key?(:submission_information)
  end
end

class InputParsingTest < Minitest::Test
  def test_bool_table
    { "true" => true, "TRUE" => true, " false " => false, "" => nil, nil => nil }.each do |text, expected|
      if expected.nil?
        assert_nil AscWebhook.parse_optional_bool(text, "X"), text.inspect
      else
        assert_equal expected, AscWebhook.parse_optional_bool(text, "X"), text.inspect
      end
    end
  end

  def test_bool_rejects_other_text
    error = assert_raises(AscWebhook::Error) { AscWebhook.parse_optional_bool("yes", "X") }
    assert_equal 'X is "yes": set it to true or false, or leave it empty', error.message
  end

  def test_missing_key_variables
    env = { "APP_STORE_CONNECT_API_KEY_KEY_ID" => "ABC123DEFG", "APP_STORE_CONNECT_API_KEY_KEY" => " " }
    assert_equal ["APP_STORE_CONNECT_API_KEY_KEY"], AscWebhook.missing_key_variables(env)
  end

  def test_issuer_id_optional
    env = { "APP_STORE_CONNECT_API_KEY_KEY_ID" => "ABC123DEFG", "APP_STORE_CONNECT_API_KEY_KEY" => "pem" }
    assert_empty AscWebhook.missing_key_variables(env)
  end
end
