# frozen_string_literal: true

require "minitest/autorun"
require "json"
require "tmpdir"

# fastlane is not installed here, so these tests load the Fastfile the way
# fastlane does (eval with the file's path) into a stand-in that records what the
# lanes call. They check the wiring: inputs first, then the key, the fetch and
# the deliver call. They cannot show that fastlane itself accepts the options.

# Raised by the stand-in UI.user_error!, as fastlane raises FastlaneError.
class UserError < StandardError; end

# Stand-in for fastlane's UI, recording every message.
module UI
  MESSAGES = [] # rubocop:disable Style/MutableConstant

  def self.user_error!(message)
    raise UserError, message
  end

  def self.message(text)
    MESSAGES << text
  end

  def self.important(text)
    MESSAGES << text
  end
end

# Stand-in for the Spaceship client the lanes fetch through.
module Spaceship
  class ConnectAPI
    Response = Struct.new(:body)

    class << self
      attr_accessor :responses, :requests

      def test_flight_request_client
        self
      end

      def get(url)
        requests << url
        Response.new(responses.fetch(url) { raise "unexpected GET #{url}" })
      end
    end
  end
end

# Loads the Fastfile as fastlane's FastFile#parse does and records action calls.
class FakeFastfile
  attr_reader :lanes, :calls

  def initialize
    @lanes = {}
    @calls = []
  end

  def parse(path)
    eval(File.read(path), binding, path) # rubocop:disable Security/Eval
  end

  def desc(_text); end

  def lane(name, &block)
    @lanes[name] = block
  end

  def run(name, options = {})
    @lanes.fetch(name).call(options)
  end

  def app_store_connect_api_key(**options)
    @calls << [:app_store_connect_api_key, options]
    { key_id: options[:key_id] }
  end

  def upload_to_app_store(**options)
    @calls << [:upload_to_app_store, options]
  end
end

class FastfileTest < Minitest::Test
  FASTFILE = File.expand_path("../Fastfile", __dir__)
  UPLOAD_URL = "http://127.0.0.1:9/v1/buildUploads/upload-1"
  ENV_NAMES = %w[
    APP_STORE_CONNECT_API_KEY_KEY_ID APP_STORE_CONNECT_API_KEY_ISSUER_ID
    APP_STORE_CONNECT_API_KEY_KEY ASC_APP_IDENTIFIER ASC_USES_NON_EXEMPT_ENCRYPTION
    ASC_API_URL GITHUB_EVENT_PATH
  ].freeze

  def setup
    @saved_env = ENV_NAMES.to_h { |name| [name, ENV.fetch(name, nil)] }
    ENV_NAMES.each { |name| ENV.delete(name) }
    ENV["APP_STORE_CONNECT_API_KEY_KEY_ID"] = "ABC123DEFG"
    ENV["APP_STORE_CONNECT_API_KEY_ISSUER_ID"] = "69a6de70-0000-47e3-e053-5b8c7c11a4d1"
    ENV["APP_STORE_CONNECT_API_KEY_KEY"] = "-----BEGIN PRIVATE KEY-----\nfake\n-----END PRIVATE KEY-----"
    ENV["ASC_APP_IDENTIFIER"] = "com.example.app"
    ENV["ASC_API_URL"] = "http://127.0.0.1:9"
    Spaceship::ConnectAPI.requests = []
    Spaceship::ConnectAPI.responses = { UPLOAD_URL => upload_record("COMPLETE") }
    UI::MESSAGES.clear
    @fastfile = FakeFastfile.new
    Dir.chdir(File.expand_path("../..", __dir__)) { @fastfile.parse("fastlane/Fastfile") }
  end

  def teardown
    @saved_env.each { |name, value| value.nil? ? ENV.delete(name) : ENV[name] = value }
  end

  def upload_record(state)
    {
      "data" => {
        "type" => "buildUploads", "id" => "upload-1",
        "attributes" => {
          "cfBundleShortVersionString" => "2.0.0", "cfBundleVersion" => "57",
          "platform" => "IOS", "state" => { "state" => state }
        }
      }
    }
  end

  def event(new_state = "COMPLETE")
    JSON.generate(
      "event" => "buildUploadStateUpdated", "id" => "e-1", "new_state" => new_state,
      "resource" => {
        "type" => "buildUploads", "id" => "upload-1",
        "url" => "https://api.appstoreconnect.apple.com/v1/buildUploads/upload-1"
      }
    )
  end

  def call_names
    @fastfile.calls.map(&:first)
  end

  def test_lanes_defined
    assert_equal %i[submit_from_webhook show_webhook_resource], @fastfile.lanes.keys
  end

  def test_submit_calls_deliver_with_upload
    @fastfile.run(:submit_from_webhook, payload: event, uses_non_exempt_encryption: "false")

    assert_equal [UPLOAD_URL], Spaceship::ConnectAPI.requests
    assert_equal %i[app_store_connect_api_key upload_to_app_store], call_names
    deliver = @fastfile.calls.last.last
    assert_equal "2.0.0", deliver[:app_version]
    assert_equal "57", deliver[:build_number]
    assert_equal "com.example.app", deliver[:app_identifier]
    assert_equal({ key_id: "ABC123DEFG" }, deliver[:api_key])
    assert_equal true, deliver[:skip_binary_upload]
    assert_equal({ export_compliance_uses_encryption: false }, deliver[:submission_information])
  end

  def test_submit_reads_github_event_path
    Dir.mktmpdir do |dir|
      path = File.join(dir, "event.json")
      File.write(path, JSON.generate("client_payload" => JSON.parse(event)))
      ENV["GITHUB_EVENT_PATH"] = path
      @fastfile.run(:submit_from_webhook)
    end
    assert_equal %i[app_store_connect_api_key upload_to_app_store], call_names
  end

  def test_submit_skips_other_states
    @fastfile.run(:submit_from_webhook, payload: event("PROCESSING"))
    assert_empty @fastfile.calls
    assert_empty Spaceship::ConnectAPI.requests
    assert_match(/Nothing to submit: build upload state "PROCESSING"/, UI::MESSAGES.join("\n"))
  end

  def test_missing_event_stops_first
    error = assert_raises(UserError) { @fastfile.run(:submit_from_webhook) }
    assert_match(/no webhook event given/, error.message)
    assert_empty @fastfile.calls
  end

  def test_missing_app_identifier_stops_before_requests
    ENV.delete("ASC_APP_IDENTIFIER")
    error = assert_raises(UserError) { @fastfile.run(:submit_from_webhook, payload: event) }
    assert_equal "app_identifier is missing: pass app_identifier:<bundle id> or set ASC_APP_IDENTIFIER",
                 error.message
    assert_empty @fastfile.calls
    assert_empty Spaceship::ConnectAPI.requests
  end

  def test_missing_key_stops_before_requests
    ENV.delete("APP_STORE_CONNECT_API_KEY_KEY")
    error = assert_raises(UserError) { @fastfile.run(:submit_from_webhook, payload: event) }
    assert_match(/\AAPP_STORE_CONNECT_API_KEY_KEY not set/, error.message)
    refute_includes error.message, "fake"
    assert_empty Spaceship::ConnectAPI.requests
  end

  def test_invalid_encryption_answer_stops
    error = assert_raises(UserError) do
      @fastfile.run(:submit_from_webhook, payload: event, uses_non_exempt_encryption: "maybe")
    end
    assert_match(/uses_non_exempt_encryption .* is "maybe"/, error.message)
    assert_empty Spaceship::ConnectAPI.requests
  end

  def test_incomplete_record_not_submitted
    Spaceship::ConnectAPI.responses = { UPLOAD_URL => upload_record("PROCESSING") }
    error = assert_raises(UserError) { @fastfile.run(:submit_from_webhook, payload: event) }
    assert_match(/is "PROCESSING", not COMPLETE/, error.message)
    assert_equal %i[app_store_connect_api_key], call_names
  end

  def test_show_resource_prints_body
    output, = capture_io { @fastfile.run(:show_webhook_resource, payload: event) }
    assert_equal upload_record("COMPLETE"), JSON.parse(output)
    assert_equal [UPLOAD_URL], Spaceship::ConnectAPI.requests
    assert_includes UI::MESSAGES, "GET #{UPLOAD_URL}"
  end
end
